"""Who may see and do what on the staff pages: Django model permissions, as in the admin.

Anonymous and non-staff users are sent to the login form (as the admin does); staff
without the permission get 403. Superusers have every permission."""

import functools

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse


def staff_permission_required(*perms: str):
    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not (user.is_authenticated and user.is_active and user.is_staff):
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            if not user.has_perms(perms):
                raise PermissionDenied(f"needs {', '.join(perms)}")
            return view(request, *args, **kwargs)

        wrapped.required_permissions = perms  # read by the per-role access test
        return wrapped

    return decorator
