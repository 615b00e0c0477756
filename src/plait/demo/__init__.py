"""The synthetic omnichannel world behind ``plait demo``, tests and benchmarks
(:func:`plait.demo.build.build_demo`)."""
