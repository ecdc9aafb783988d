from django import forms

from keys.models import Plan
from keys.presenters import plan_terms


class KeyCreateForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.none(), empty_label=None, widget=forms.RadioSelect)

    def __init__(self, *args, plans: list[Plan], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.filter(pk__in=[p.pk for p in plans]).prefetch_related("models")
        self.fields["plan"].label_from_instance = lambda p: (
            f"{p.name} — {p.quota} requests {p.get_period_display()} · {plan_terms(p)}"
        )
