# Time saved per workflow (minutes a run replaces) and the organization's unit prices (ops/costs.py).

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0008_shadow_mode'),
        ('crm', '0012_monitor_email_run_id'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='workflow',
            name='minutes_saved',
            field=models.PositiveIntegerField(db_default=0, default=0, help_text='Minutes of manual work one completed run replaces (0: not counted).'),
        ),
        migrations.CreateModel(
            name='UnitPrices',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('email', models.DecimalField(decimal_places=6, default=0, help_text='Per email sent.', max_digits=12, validators=[django.core.validators.MinValueValidator(0, 'must not be negative')])),
                ('sms_segment', models.DecimalField(decimal_places=6, default=0, help_text='Per SMS segment sent.', max_digits=12, validators=[django.core.validators.MinValueValidator(0, 'must not be negative')])),
                ('ai_1k_tokens', models.DecimalField(decimal_places=6, default=0, help_text='Per 1,000 AI tokens (prompt and answer).', max_digits=12, validators=[django.core.validators.MinValueValidator(0, 'must not be negative')])),
                ('webhook_call', models.DecimalField(decimal_places=6, default=0, help_text='Per webhook or HTTP request made (each try).', max_digits=12, validators=[django.core.validators.MinValueValidator(0, 'must not be negative')])),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('organization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='crm.organization')),
                ('updated_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'unit prices',
                'verbose_name_plural': 'unit prices',
            },
        ),
    ]
