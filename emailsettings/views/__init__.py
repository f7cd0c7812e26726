"""Pages of the email module, one module per section. Every query is scoped to the
logged-in practitioner (``Model.objects.owned_by(request.user)``)."""
