"""Forms that write only what the person changed, and never overwrite what someone else did.

Every field renders its value as the page showed it in a hidden `initial-<name>` input (Django's
`show_hidden_initial`). On save:

- the fields the person changed are those whose posted value differs from what the page
  showed (not from the row as it is now, which a workflow may have changed meanwhile);
- for each of them, the row is read under a lock (the admin's save runs in one transaction):
  if its value is no longer what the page showed, someone else changed that same field, and
  the form says so instead of overwriting it; the page then carries the current value as
  "what you saw", so saving again replaces it deliberately;
- only the changed fields are written (see `changes()` and `expected()`), so a workflow that
  set the probability to 100 while the page was open keeps its 100 when the title is saved.

A post without the hidden inputs (a script) falls back to comparing with the current row.
"""

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.models import model_to_dict
from django.utils.functional import cached_property

from crm_automation import bounded_reader
from crm_automation.crm.concurrency import comparable, conflict_message


class SafeJSONField(forms.JSONField):
    """JSON typed into the admin, read by the bounded reader (size, depth, values, NUL): Django's
    JSONField lets json.loads' ValueError through (a number of 5,000 digits gives a 500) and
    accepts any depth; say what is wrong instead."""

    def to_python(self, value):
        if self.disabled or value in self.empty_values or not isinstance(value, str):
            return super().to_python(value)
        try:
            converted = bounded_reader.read_json(value, bounded_reader.PAYLOAD)
        except bounded_reader.InputRefused as exc:
            raise ValidationError(f"Enter valid JSON: {exc}.", code="invalid") from None
        return forms.fields.JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except ValueError:
            return forms.fields.InvalidJSONInput(data)

    def has_changed(self, initial, data):
        try:
            return super().has_changed(initial, data)
        except ValueError:
            return True


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
            try:
                opened = bound.initial if raw is None else field.to_python(comparable(raw))
                if field.has_changed(opened, comparable(bound.data)):
                    changed.append(name)
            except (ValidationError, ValueError):
                changed.append(name)
        return changed

    def expected(self) -> dict:
        """For each changed field, the value the page showed (python), as a service expects it."""
        values = {}
        for name in self.changed_data:
            raw = self._opened_raw(name)
            if raw is not None:
                values[name] = self.fields[name].to_python(comparable(raw))
        return values

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.changed_data if name in self.cleaned_data}

    def clean(self):
        data = super().clean()
        # (A new deal or lead already has its UUID before it is saved: `_state.adding` says new.)
        if self.instance._state.adding or self.instance.pk is None or not self.changed_data:
            return data
        # Locked until the admin's transaction ends: nobody can change the row between this
        # check and the save.
        current = type(self.instance)._default_manager.select_for_update(no_key=True).get(pk=self.instance.pk)
        now = self.stored_values(current, self.changed_data)
        seen_now = {}
        for name in self.changed_data:
            raw = self._opened_raw(name)
            if raw is None or name not in now:
                continue
            field = self.fields[name]
            if field.has_changed(comparable(now[name]), comparable(raw)):
                self.add_error(name, conflict_message(getattr(current, name, now[name])))
                seen_now[self[name].html_initial_name] = field.hidden_widget().format_value(
                    field.prepare_value(now[name]))
        if seen_now:  # the page now shows theirs as "what you saw": saving again is deliberate
            self.data = self.data.copy()
            for key, value in seen_now.items():
                self.data[key] = "" if value is None else value
        return data

    def stored_values(self, current, names: list[str]) -> dict:
        """The values of the fields `names` as stored now, to compare with what the page showed.
        A form with fields that are not columns reads theirs too."""
        return model_to_dict(current, fields=names)

    def _update_errors(self, errors) -> None:
        """A model check may name a field this form does not show (read-only here): show its
        message at the top instead of failing with "has no field named …"."""
        if hasattr(errors, "error_dict"):
            moved: dict[str, list[str]] = {}
            for name, messages in errors.error_dict.items():
                key = name if name == NON_FIELD_ERRORS or name in self.fields else NON_FIELD_ERRORS
                moved.setdefault(key, []).extend(messages)
            errors = ValidationError(moved)
        super()._update_errors(errors)  # type: ignore[misc]  # (a private method of Django's forms the stubs omit)
