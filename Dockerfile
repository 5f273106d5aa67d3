# Image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENV DJANGO_SETTINGS_MODULE=orchestrator.settings PYTHONUNBUFFERED=1
EXPOSE 9090
CMD ["gunicorn", "orchestrator.wsgi:application", "--config", "python:orchestrator.gunicorn_conf", "--bind", "0.0.0.0:9090"]
