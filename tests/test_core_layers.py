"""core's rooms import only the rooms below them (docs/architecture.md), so each can be read,
tested and changed knowing what it may depend on."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
# Lowest first. core.config and core.errors sit below every room and import nothing of core.
LAYERS = [
    "artifacts",
    "service",
    "data",
    "registry",
    "science",
    "reporting",
    "evaluation",
    "workflows",
]
BASE = {"config", "errors"}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "core" and len(parts) > 1 else None


def core_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("core."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("core."):
                names.add(node.module)
            elif node.module == "core":
                names.update(f"core.{alias.name}" for alias in node.names)
    return names


def test_every_core_module_sits_in_a_room() -> None:
    loose = [p.name for p in CORE.glob("*.py") if p.stem not in BASE | {"__init__"}]
    assert loose == [], "put each module of core/ into the room that owns its concern"
    rooms = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(LAYERS)


def test_rooms_import_only_rooms_below_them() -> None:
    upward = []
    for path in CORE.rglob("*.py"):
        own = room_of(".".join(path.relative_to(CORE.parent).with_suffix("").parts))
        for name in core_imports(path):
            if goes_up(own, room_of(name)):
                upward.append(f"{path.relative_to(CORE.parent)} -> {name}")
    assert upward == []


def goes_up(own: str | None, target: str | None) -> bool:
    if target is None or target == own or target in BASE:
        return False
    if own in BASE:
        return True
    return LAYERS.index(target) > LAYERS.index(own)
