from dataclasses import dataclass, field
@dataclass
class JobSpec:
    entrypoint: str
    runtime_env: dict = field(default_factory=dict)
    entrypoint_num_cpus: float = 0
    entrypoint_num_gpus: float = 0
    needs_cpus: float = 1
    needs_gpus: float = 0
    detached: bool = False
    metadata: dict = field(default_factory=dict)
