"""App configuration: autodiscover ``tasks`` modules and register the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import autodiscover_modules


class CloudTaskConfig(AppConfig):
    name = "cloudtask"
    verbose_name = "Cloud Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks as cloudtask_checks

        checks.register(cloudtask_checks.check_settings, "cloudtask")
        checks.register(cloudtask_checks.check_deploy, "cloudtask", deploy=True)
        checks.register(cloudtask_checks.check_oidc, "cloudtask")
        checks.register(cloudtask_checks.check_oidc_deploy, "cloudtask", deploy=True)
        checks.register(cloudtask_checks.check_task_tokens, "cloudtask")
        checks.register(cloudtask_checks.check_periodic_tasks, "cloudtask")
        from . import results

        results.sync_receivers()
        # Importing every installed app's tasks.py fills the registry the endpoint reads.
        autodiscover_modules("tasks")
