"""Date and time formats (FORMAT_MODULE_PATH): the admin shows times as the pages do."""
