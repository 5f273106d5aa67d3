"""Project.serving is Project.serving_version (one name for the version a project serves); a run's tag is its push tag."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('learning', '0004_scoring_pool'),
    ]

    operations = [
        migrations.RenameField(model_name='project', old_name='serving', new_name='serving_version'),
        migrations.AlterField(
            model_name='project',
            name='serving_version',
            field=models.ForeignKey(blank=True, help_text='The version /setup and /predict answer with, and pushes score with; none means cold start.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='learning.modelversion'),
        ),
        migrations.AlterField(
            model_name='modelversion',
            name='model_uri',
            field=models.CharField(blank=True, help_text='Where the model cache loads it from (MLflow).', max_length=500),
        ),
        migrations.AlterField(
            model_name='scoringrun',
            name='tag',
            field=models.CharField(help_text='The model_version the pushed predictions carry in Label Studio.', max_length=120, verbose_name='push tag'),
        ),
    ]
