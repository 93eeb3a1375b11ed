"""First run convenience: make sure someone can log in to the dashboard.

In development (DEBUG) with no superuser yet, creates `admin` with a random password
and prints it once. In production it only reminds you to run createsuperuser.
"""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a first superuser in development if there is none."

    def handle(self, *args, **options):
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        if not settings.DEBUG:
            self.stdout.write("No superuser yet: run `manage.py createsuperuser`.")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        # One line, which scripts/run shows after everything has started.
        self.stdout.write(f"admin / {password}   (a new account: the password is shown once)")
