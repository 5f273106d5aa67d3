"""The management API's permission: the admin's rule (orchestrator/learning/access.py) for scripts.

Anonymous callers get 401 and accounts that are not staff 403, as before; a staff account
reads a list or a record with the model's view permission and acts (any POST or PUT) with
"Can change project". A refusal's `detail` names the permission that is missing."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import SAFE_METHODS, BasePermission

if TYPE_CHECKING:  # rest_framework.views imports this module while it loads its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

from orchestrator.learning import access


class ConsolePermission(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        if not access.staff(request.user):
            return False  # DRF's own message: "You do not have permission to perform this action."
        if request.method in SAFE_METHODS:
            model = read_model(view)
            if model and not access.can_view(request.user, model):
                self.message = access.view_refusal(model)
                return False
            return True
        if not access.can_steer(request.user):
            self.message = access.steer_refusal()
            return False
        return True


def read_model(view: APIView) -> str | None:
    """The model whose rows a read returns: the action's own (`read_models`), else the view's queryset's."""
    own = getattr(view, "read_models", {}).get(getattr(view, "action", None))
    if own:
        return own
    rows = getattr(view, "rows", None)
    if rows is None and hasattr(view, "get_queryset"):
        rows = view.get_queryset()
    return rows.model._meta.model_name if rows is not None else None
