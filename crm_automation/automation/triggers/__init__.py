"""What starts a workflow besides a plain record save: field changes, schedules, relative time,
a person's manual start, bulk operations."""
