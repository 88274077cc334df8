"""Editing: code mappers, the Edit -> codes API, inversion, and the codes files they exchange."""
