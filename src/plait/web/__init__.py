"""The dashboard: server-rendered pages (Jinja2) over the same services as the API, with
sign-in, roles and CSRF protection, and charts drawn by the bundled Plotly.js."""
