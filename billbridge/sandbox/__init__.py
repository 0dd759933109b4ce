"""Local emulators of the vendor APIs, used by the demo and the tests. Never imported by production paths."""
