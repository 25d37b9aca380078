"""AI in workflows: `agent` and `router` nodes (nodes.py), the provider they ask
(providers.py), and workflows drafted from a description (authoring.py)."""
