"""What a workflow is: the allow-lists (catalog), its document, its graph, conditions, templates,
error policies, and the checks that say what is wrong and where. Pure data; nothing here writes."""
