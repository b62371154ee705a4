"""The shipped catalog says what the source article says, no more and no less."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from httpx import AsyncClient
from sqlmodel import select

from app.core.config import Settings
from app.core.db import make_engine, transaction
from app.exercises.catalog import CATALOG_FILE, load_catalog, read_catalog
from app.exercises.models import Exercise
from tests.conftest import DatabaseFactory, migrated

ARTICLE = Path(__file__).resolve().parents[3] / "shared/seeds/foot-drop-exercises-article.txt"

# What the article states of each exercise. None: the article gives no such fact.
FACTS: dict[str, dict[str, Any]] = {
    "assisted-heel-raises": {
        "movements": ["plantarflexion"],
        "mode": "active_assisted",
        "position": None,
        "equipment": [],
        "dose": {"reps": 10},
        "harder": None,
        "easier": None,
        "steps_in_order": ["feet flat", "heels", "ten"],
    },
    "ankle-dorsiflexion": {
        "movements": ["dorsiflexion"],
        "mode": "active_assisted",
        "position": "long_sitting",
        "equipment": ["stretch_band", "towel"],
        "dose": {"sets": 3, "reps": 10, "sessions_per_week": 3, "each_side": True},
        "harder": None,
        "easier": None,
        "steps_in_order": ["Sit on the floor", "band or a towel", "toes up", "starting position"],
    },
    "ankle-abduction-adduction": {
        "movements": ["ankle_abduction", "ankle_adduction"],
        "mode": "passive",
        "position": "legs_crossed",
        "equipment": [],
        "dose": None,
        "harder": "ankle-abduction-adduction-active",
        "easier": None,
        "steps_in_order": ["Cross your affected leg", "hand", "perpendicular"],
    },
    "ankle-abduction-adduction-active": {
        "movements": ["ankle_abduction", "ankle_adduction"],
        "mode": "active",
        "position": "legs_crossed",
        "equipment": [],
        "dose": None,
        "harder": None,
        "easier": "ankle-abduction-adduction",
        "steps_in_order": ["Cross your affected leg", "Without using your hands"],
    },
    "ankle-inversion": {
        "movements": ["inversion"],
        "mode": "active",
        "position": "legs_crossed",
        "equipment": [],
        "dose": None,
        "harder": None,
        "easier": None,
        "steps_in_order": ["crossed", "inside edge", "midline", "Relax"],
    },
    "ankle-eversion": {
        "movements": ["eversion"],
        "mode": "active",
        "position": None,
        "equipment": [],
        "dose": {"reps": 10},
        "harder": None,
        "easier": None,
        "steps_in_order": ["flat on the ground", "outside edge", "Relax", "foot and ankle"],
    },
    "hip-rotation": {
        "movements": ["hip_internal_rotation", "hip_external_rotation"],
        "mode": "active_assisted",
        "position": "seated",
        "equipment": ["cloth", "chair"],
        "dose": None,
        "harder": None,
        "easier": None,
        "steps_in_order": [
            "cloth",
            "Support your affected leg",
            "internal rotation",
            "external rotation",
        ],
    },
    "hip-abduction-adduction": {
        "movements": ["hip_adduction", "hip_abduction"],
        "mode": "active",
        "position": "seated",
        "equipment": ["chair"],
        "dose": None,
        "harder": None,
        "easier": None,
        "steps_in_order": ["Sit", "inward", "hip adduction", "outward", "hip abduction"],
    },
}


def test_the_article_is_the_source_we_read() -> None:
    text = ARTICLE.read_text(encoding="utf-8")
    for phrase in (
        "Do three sets of 10 flexes on each foot, three days a week",
        "rep ten times",
        "Rep 10 times more",
        "without using your hands",
        "Mount, Julie and Dacko, Stan",
    ):
        assert phrase in text


async def test_catalog_holds_exactly_the_articles_exercises(client: AsyncClient) -> None:
    items = (await client.get("/v1/exercises")).json()["items"]
    assert sorted(item["slug"] for item in items) == sorted(FACTS)


@pytest.mark.parametrize("slug", sorted(FACTS))
async def test_exercise_matches_the_article(client: AsyncClient, slug: str) -> None:
    facts = FACTS[slug]
    exercise = (await client.get(f"/v1/exercises/{slug}")).json()
    assert exercise["movements"] == facts["movements"]
    assert exercise["mode"] == facts["mode"]
    assert exercise["position"] == facts["position"]
    assert exercise["equipment"] == facts["equipment"]
    dose = exercise["default_dose"]
    if facts["dose"] is None:
        assert dose is None
    else:
        given = {k: v for k, v in dose.items() if v is not None}
        assert given == facts["dose"]
    for link in ("harder", "easier"):
        variant = exercise[f"{link}_variant"]
        assert (variant and variant["slug"]) == facts[link]
    steps = " ".join(exercise["steps"])
    positions = [steps.find(phrase) for phrase in facts["steps_in_order"]]
    assert -1 not in positions, (positions, steps)
    assert positions == sorted(positions)
    assert exercise["cautions"] == []
    assert exercise["media"] == []
    assert exercise["owner"] == "global"


@pytest.mark.parametrize("slug", sorted(FACTS))
async def test_every_exercise_cites_the_article_and_mount_and_dacko(
    client: AsyncClient, slug: str
) -> None:
    references = (await client.get(f"/v1/exercises/{slug}")).json()["references"]
    citations = [reference["citation"] for reference in references]
    assert any("Foot Drop: How to manage foot drop with exercises" in c for c in citations)
    mount_dacko = [c for c in citations if "Mount" in c and "Dacko" in c]
    assert len(mount_dacko) == 1
    for detail in ("NeuroRehabilitation", "2006", "21(1)", "43-50"):
        assert detail in mount_dacko[0]


async def test_progressions_link_both_ways(client: AsyncClient) -> None:
    passive = (await client.get("/v1/exercises/ankle-abduction-adduction")).json()
    active = (await client.get(f"/v1/exercises/{passive['harder_variant']['id']}")).json()
    assert active["mode"] == "active"
    assert active["easier_variant"]["id"] == passive["id"]


async def test_loading_is_idempotent_and_versions_changes(
    new_database: DatabaseFactory, tmp_path: Path
) -> None:
    engine = make_engine(Settings(database_url=await migrated(new_database())))
    try:
        async with transaction(engine) as session:
            counts = await load_catalog(session, read_catalog())
            assert counts == {"created": 0, "updated": 0, "unchanged": 8}
        data = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))
        data["exercises"][0]["summary"] = "A reworded summary."
        changed = tmp_path / "catalog.yaml"
        changed.write_text(yaml.safe_dump(data), encoding="utf-8")
        async with transaction(engine) as session:
            counts = await load_catalog(session, read_catalog(changed))
            assert counts == {"created": 0, "updated": 1, "unchanged": 7}
        async with transaction(engine) as session:
            assert (await load_catalog(session, read_catalog(changed)))["updated"] == 0
            row = (
                await session.exec(
                    select(Exercise).where(Exercise.slug == data["exercises"][0]["slug"])
                )
            ).one()
            assert (row.summary, row.version) == ("A reworded summary.", 2)
            assert row.updated_at > row.created_at
    finally:
        await engine.dispose()
