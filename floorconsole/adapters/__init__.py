"""I/O adapters: the only place pymodbus, paho-mqtt, onnxruntime and SQLite are used."""
