"""Processes, servers and the network-namespace cluster that tests/ and bench/ both drive."""
