"""The foundation every area builds on: settings, database, lake, ids, clock, errors, auth."""
