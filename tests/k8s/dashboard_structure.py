"""Structural rules for Tau's Grafana dashboard that @grafana/schema's TypeScript types leave open.

The types make `id`, `gridPos`, `datasource` and `targets` optional and type a target as any object, so a
panel without a position, a target without a refId or two panels with one id all type-check. Grafana then
drops or misplaces them at load time; these rules catch them first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

GRID_COLUMNS = 24
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

Panel = dict[str, Any]


def all_panels(dashboard: dict[str, Any]) -> Iterator[Panel]:
    """Top-level panels and rows, then the panels a collapsed row holds."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", []) if panel.get("type") == "row" else []


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """Everything wrong with the dashboard's panels, one message each; empty when it is sound."""
    problems: list[str] = []
    seen_ids: dict[object, str] = {}
    placed: list[tuple[str, dict[str, int]]] = []
    for index, panel in enumerate(all_panels(dashboard)):
        name = f"panel {panel.get('id', f'#{index}')} ({panel.get('title', 'untitled')!r})"
        panel_id = panel.get("id")
        if not isinstance(panel_id, int):
            problems.append(f"{name}: id must be an integer, got {panel_id!r}")
        elif panel_id in seen_ids:
            problems.append(f"{name}: id {panel_id} is also used by {seen_ids[panel_id]}")
        else:
            seen_ids[panel_id] = name
        if not panel.get("title"):
            problems.append(f"{name}: has no title")
        problems += _grid_problems(name, panel.get("gridPos"), placed)
        if panel.get("type") != "row":
            problems += _query_problems(name, panel)
    return problems


def _grid_problems(name: str, grid: object, placed: list[tuple[str, dict[str, int]]]) -> list[str]:
    if not isinstance(grid, dict) or not all(isinstance(grid.get(key), int) for key in ("h", "w", "x", "y")):
        return [f"{name}: gridPos must hold integers h, w, x, y, got {grid!r}"]
    if grid["h"] < 1 or grid["w"] < 1 or grid["x"] < 0 or grid["y"] < 0 or grid["x"] + grid["w"] > GRID_COLUMNS:
        return [f"{name}: gridPos {grid} lies outside the {GRID_COLUMNS}-column grid"]
    problems = [f"{name}: gridPos {grid} overlaps {other}" for other, taken in placed if _overlap(grid, taken)]
    placed.append((name, grid))
    return problems


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    overlap_x = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
    return overlap_x and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def _query_problems(name: str, panel: Panel) -> list[str]:
    problems = []
    if panel.get("datasource") != DATASOURCE_REF:
        problems.append(f"{name}: datasource must be {DATASOURCE_REF}, got {panel.get('datasource')!r}")
    targets = panel.get("targets")
    if not isinstance(targets, list) or not targets:
        return [*problems, f"{name}: has no targets"]
    ref_ids = set()
    for target in targets:
        ref_id = target.get("refId") if isinstance(target, dict) else None
        if not isinstance(ref_id, str) or not ref_id:
            problems.append(f"{name}: target {target!r} has no refId")
            continue
        if ref_id in ref_ids:
            problems.append(f"{name}: refId {ref_id!r} is used twice")
        ref_ids.add(ref_id)
        if not isinstance(target.get("expr"), str) or not target["expr"].strip():
            problems.append(f"{name}: target {ref_id} has no expr")
        if target.get("datasource", DATASOURCE_REF) != DATASOURCE_REF:
            problems.append(f"{name}: target {ref_id} datasource must be {DATASOURCE_REF}")
    return problems


def panel_exprs(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every query of every panel, keyed 'panel <id> <refId>'."""
    return {
        f"panel {panel['id']} {target['refId']}": target["expr"]
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    }
