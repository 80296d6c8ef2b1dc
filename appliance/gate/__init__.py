"""The gate: entry passes, the replay cache, binding people to visits, and exits."""
