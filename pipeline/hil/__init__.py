"""Hardware-in-the-loop: the MLPerf Tiny serial protocol, a device reader, measurement, energy, flashing,
an emulated device, and result files."""
