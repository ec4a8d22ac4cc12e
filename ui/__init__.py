"""The web dashboard (``systemprompt infra ui``): jobs, next runs, history, run control."""
