"""PsicoGest email module: cover mail, Smart Mail and personal SMTP senders, deliveries."""
