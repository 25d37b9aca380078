"""Thin page views: read through selectors, write through the services the admin and the API
call, and say what happened (or why not) in a message on the page they return to."""
