"""Forms of the email module, one module per section of the settings page."""
