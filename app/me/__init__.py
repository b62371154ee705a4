"""The patient app's own view: who I am, my plan, and what is due today."""
