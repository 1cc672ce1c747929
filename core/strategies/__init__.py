"""Test-time compute strategies, one per module, all behind the interface in `base`."""
