# Workbench as a public demo: CPU only, demo limits on, the embedded model baked into the image.
#   docker build -t workbench . && docker run -p 7860:7860 workbench
# On a Hugging Face Space (Docker SDK) this file is all that is needed; the Space's port is 7860.
FROM python:3.11-slim
RUN useradd --create-home --uid 1000 workbench
WORKDIR /home/workbench/app
COPY --chown=workbench . .
USER workbench
ENV WORKBENCH_TORCH=cpu WORKBENCH_HOME=/home/workbench/workspace PORT=7860
RUN bash scripts/setup.sh && .venv/bin/workbench models prepare default
EXPOSE 7860
CMD ["bash", "scripts/start-space.sh"]
