"""Loading the shipped data (the global exercise catalog and its templates), idempotently."""

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import transaction
from app.exercises.catalog import load_catalog, read_catalog
from app.plans.catalog import load_templates


async def seed(engine: AsyncEngine) -> dict[str, int]:
    """Bring the global catalog and templates in line with the data file; returns how many
    exercises were created, updated and left unchanged."""
    data = read_catalog()
    async with transaction(engine) as session:
        counts = await load_catalog(session, data)
        await load_templates(session, data.get("templates", []))
    return counts
