"""What a model learns from (Project.features, ModelVersion.features).

Projects and versions that exist already learned from TF-IDF and keep it; projects
connected from now on get settings.DEFAULT_FEATURES.
"""

from django.db import migrations, models

import orchestrator.learning.models


class Migration(migrations.Migration):

    dependencies = [
        ('learning', '0005_serving_version'),
    ]

    operations = [
        migrations.AddField(
            model_name='modelversion',
            name='features',
            field=models.CharField(default='tfidf', help_text='What this version learned from.', max_length=32),
        ),
        migrations.AddField(
            model_name='project',
            name='features',
            field=models.CharField(default='tfidf', max_length=32),
        ),
        migrations.AlterField(
            model_name='project',
            name='features',
            field=models.CharField(choices=[('tfidf', "tfidf: TF-IDF of the project's words (unigrams and bigrams)"), ('glove', 'glove: the mean of pretrained GloVe 6B 50-d word vectors'), ('tfidf+glove', 'tfidf+glove: both, side by side')], default=orchestrator.learning.models.default_features, help_text='What the next model versions learn from. A version keeps the features it was trained on.', max_length=32),
        ),
        migrations.AlterField(
            model_name='project',
            name='strategy',
            field=models.CharField(default=orchestrator.learning.models.default_strategy, help_text='Query strategy that turns model probabilities into labelling priority.', max_length=64, validators=[orchestrator.learning.models.validate_strategy_name]),
        ),
    ]
