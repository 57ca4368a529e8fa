"""Running: experiments (TOML + built-ins), the runner, executors, jobs, the store and estimates."""
