FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/app/var
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# collectstatic needs settings to load; these placeholders never serve traffic.
RUN DEBUG=false SECRET_KEY=build OPENAI_API_KEY=build TWILIO_AUTH_TOKEN=build \
    python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["python", "-m", "voiceagents.web_server", "-b", "0.0.0.0", "-p", "8000", "voiceagents.asgi:application"]
