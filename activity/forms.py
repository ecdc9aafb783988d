from django import forms
from django.contrib.auth.models import AbstractBaseUser

from activity.models import AlertOptOut


class UsageAlertsForm(forms.Form):
    """Usage alerts are on unless the user opted out; an unticked box is a POST without the field."""

    alerts = forms.BooleanField(
        required=False,
        label="Email me when a key reaches 80% and 100% of its request quota, token budget or money budget",
    )

    def __init__(self, *args, user: AbstractBaseUser, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["alerts"].initial = not AlertOptOut.objects.filter(user=user).exists()

    def save(self) -> bool:
        """Apply the choice; returns whether alerts are on."""
        if self.cleaned_data["alerts"]:
            AlertOptOut.objects.filter(user=self.user).delete()
            return True
        AlertOptOut.objects.get_or_create(user=self.user)
        return False
