"""Each policy number gets its range; rows saved before it (e.g. quiet_seconds 1e20 from Extra params,
which failed every later check of its project) are brought into it."""

import django.core.validators
from django.db import migrations, models

# As extra_params.POLICY_BOUNDS had them when this migration was written.
BOUNDS = {
    "TrainingPolicy": {"min_annotations": (0, 1_000_000), "retrain_every": (0, 1_000_000),
                       "quiet_seconds": (0.0, 86_400.0), "max_macro_f1_drop": (0.0, 1.0), "stop_kappa": (0.5, 1.0)},
    "ScoringPolicy": {"chunk_size": (1, 5000)},
}


def clamp(apps, schema_editor):
    for model_name, fields in BOUNDS.items():
        model = apps.get_model("learning", model_name)
        for name, (low, high) in fields.items():
            model.objects.filter(**{f"{name}__lt": low}).update(**{name: low})
            model.objects.filter(**{f"{name}__gt": high}).update(**{name: high})


class Migration(migrations.Migration):

    dependencies = [
        ('learning', '0012_version_status_words'),
    ]

    operations = [
        migrations.AlterField(
            model_name='scoringpolicy',
            name='chunk_size',
            field=models.PositiveIntegerField(default=5000, help_text='Most predictions per bulk import request. Requests start at 1,000 (or this, if smaller) and grow while Label Studio answers within seconds.', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(5000)]),
        ),
        migrations.AlterField(
            model_name='trainingpolicy',
            name='max_macro_f1_drop',
            field=models.FloatField(default=0.02, help_text='With if_not_worse: the largest cross-validated macro-F1 drop still promoted.', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)]),
        ),
        migrations.AlterField(
            model_name='trainingpolicy',
            name='min_annotations',
            field=models.PositiveIntegerField(default=10, help_text='No automatic training before the project has this many annotations.', validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(1000000)]),
        ),
        migrations.AlterField(
            model_name='trainingpolicy',
            name='quiet_seconds',
            field=models.FloatField(default=20.0, help_text='Train when annotation changes are pending and none came for this long (0: off).', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(86400.0)]),
        ),
        migrations.AlterField(
            model_name='trainingpolicy',
            name='retrain_every',
            field=models.PositiveIntegerField(default=25, help_text='Train as soon as this many annotation changes are pending (0: off).', validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(1000000)]),
        ),
        migrations.RunPython(clamp, migrations.RunPython.noop),
    ]
