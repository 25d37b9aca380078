"""Forms that write only what the person changed, and never overwrite what someone else did.

Every field renders its value as the page showed it in a hidden `initial-<name>` input (Django's
`show_hidden_initial`). On save:

- the fields the person changed are those whose posted value differs from what the page
  showed (not from the row as it is now, which a workflow may have changed meanwhile);
- for each of them, the row is read under a lock (the admin's save runs in one transaction):
  if its value is no longer what the page showed, someone else changed that same field, and
  the form says so instead of overwriting it;
- only the changed fields are written (see `changes()` and `expected()`), so a workflow that
  set the probability to 100 while the page was open keeps its 100 when the title is saved.

A post without the hidden inputs (a script) falls back to comparing with the current row.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.utils.functional import cached_property

from crm_automation.crm.selectors import shown


class ConcurrentEditForm(forms.ModelForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.show_hidden_initial = True

    def _opened_raw(self, name: str):
        """The value the page showed for `name`, as posted back; None without the hidden input."""
        bound = self[name]
        if bound.html_initial_name not in self.data:
            return None
        return bound.field.hidden_widget().value_from_datadict(self.data, self.files, bound.html_initial_name)

    @cached_property
    def changed_data(self) -> list[str]:
        changed = []
        for name, field in self.fields.items():
            if field.disabled:
                continue
            raw = self._opened_raw(name)
            bound = self[name]
            if raw is None:
                has_changed = field.has_changed(bound.initial, bound.data)
            else:
                try:
                    has_changed = field.has_changed(field.to_python(raw), bound.data)
                except ValidationError:
                    has_changed = True
            if has_changed:
                changed.append(name)
        return changed

    def expected(self) -> dict:
        """For each changed field, the value the page showed (python), as a service expects it."""
        values = {}
        for name in self.changed_data:
            raw = self._opened_raw(name)
            if raw is not None:
                values[name] = self.fields[name].to_python(raw)
        return values

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.changed_data if name in self.cleaned_data}

    def clean(self):
        data = super().clean()
        if self.instance.pk is None or not self.changed_data:
            return data
        # Locked until the admin's transaction ends: nobody can change the row between this
        # check and the save.
        current = type(self.instance)._default_manager.select_for_update().get(pk=self.instance.pk)
        now = model_to_dict(current, fields=self.changed_data)
        for name in self.changed_data:
            raw = self._opened_raw(name)
            field = self.fields[name]
            if raw is None or name not in now:
                continue
            if field.has_changed(now[name], raw):
                self.add_error(name, f"Someone else changed this to {shown(getattr(current, name))} since you "
                                     "opened this page, so your change was not saved. Save again to replace "
                                     "it with yours, or reload the page to keep theirs.")
        return data
