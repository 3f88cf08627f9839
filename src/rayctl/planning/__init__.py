"""Planning: which offer runs a recipe, at what price (catalog -> prices -> planner)."""
