"""Create one Airflow pool of one slot per foundation of the fleet file (idempotent).

Ops Manager's API does not support parallel calls, so every task that talks to foundation X (its
rotation DAG, its part of the expiry report) runs in pool ``opsman_X``. A task whose pool does not
exist is never scheduled, so run this in the Airflow environment (same AIRFLOW_HOME / database as
the scheduler) after every change to the fleet file:

    python scripts/create_pools.py                  # include/foundations.yaml or $OPSMAN_FLEET_FILE
    python scripts/create_pools.py --fleet-file F

Deferred tasks keep their slot (``include_deferred``): a deferred Apply Changes wait still polls
Ops Manager from the triggerer. Existing pools are set back to one slot; pools of foundations
removed from the file are left alone (listed, not deleted). Without a fleet file it does nothing.
"""

from __future__ import annotations

import argparse
import sys

from opsman.fleet import Fleet, FleetFileError, load_fleet

POOL_PREFIX = "opsman_"


def create_pools(fleet: Fleet) -> list[str]:
    """Create or update the pools of ``fleet`` in the Airflow database; return their names."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    names = []
    with create_session() as session:
        for foundation in fleet.foundations:
            Pool.create_or_update_pool(
                foundation.pool,
                slots=1,
                description=f"Ops Manager of foundation {foundation.name} ({foundation.conn_id}): one API call at a time",
                include_deferred=True,
                session=session,
            )
            names.append(foundation.pool)
        stale = [p.pool for p in Pool.get_pools(session=session) if p.pool.startswith(POOL_PREFIX) and p.pool not in names]
    for name in stale:
        print(f"pool {name} belongs to no foundation of {fleet.path}; left in place (delete it with `airflow pools delete {name}`)")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet-file", help="default: $OPSMAN_FLEET_FILE or include/foundations.yaml")
    args = parser.parse_args(argv)
    try:
        fleet = load_fleet(args.fleet_file)
    except FleetFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if fleet is None:
        print("no fleet file: the single opsman_ca_rotation DAG needs no pool")
        return 0
    names = create_pools(fleet)
    print(f"{len(names)} pool(s) of 1 slot (deferred tasks included): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
