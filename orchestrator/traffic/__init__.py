"""Traffic steering: how much of the emergency traffic each site receives."""
