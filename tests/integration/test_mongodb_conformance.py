"""The MongoDB operations the stores use, pinned: the named set below, each with what our code
relies on it to do. It runs against the session's nx-27017 (the MongoDB wire protocol on
SQLite), and against a real MongoDB when ``MONGODB_URI`` names one:

    MONGODB_URI=mongodb://127.0.0.1:27017 pytest tests/integration/test_mongodb_conformance.py

A store that needs an operation not named here adds it here first, so the stand-in and the
production server are held to the same behaviour. Known gaps of nx-27017 that the code
therefore avoids (and that are not in the set): ``$push``/``$addToSet`` of sub-documents,
``$elemMatch``, ``distinct``, ``$set`` of datetimes, ``$all``; and one it has that readers
allow for: a bool set by an update comes back as 1 or 0 (inserted, it stays a bool), and a
``replace_one`` upsert takes its ``_id`` from the replacement only (so ours always name it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pymongo
import pytest
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

# What the stores (services/registry/stores.py, services/scheduler/*store*.py,
# services/common/api_key_store.py and audit_log.py, request_claims.py, history_retention.py,
# artifact_sweep.py, namespace_settings.py, schedule_records.py) call, and the test below that
# pins each.
OPERATIONS = {
    "insert_one": "test_inserts_and_unique_indexes",
    "insert_many (ordered, and unordered past a duplicate)": "test_inserts_and_unique_indexes",
    "create_index (compound, unique, sparse)": "test_inserts_and_unique_indexes",
    "find: equality, $lt $lte $gt $gte, $in, $nin, $ne, $exists": "test_filters",
    "find: $or, $and, an array field equal to one element": "test_filters",
    "find: projection, sort on two keys, limit": "test_keyset_paging",
    "find_one, count_documents": "test_filters",
    "update_one: $set, $inc, $unset, upsert, a filter on a second field": "test_updates",
    "update_many, replace_one (upsert, the replacement naming _id)": "test_updates",
    "find_one_and_update (AFTER)": "test_updates",
    "bulk_write of UpdateOne, unordered": "test_updates",
    "delete_one, delete_many": "test_deletes",
    "a datetime inserted comes back the same (tz-aware client)": "test_datetimes_round_trip",
    "a bool an update sets comes back equal to it (nx-27017: 1)": "test_updates",
}


@pytest.fixture(scope="module")
def uri(request: pytest.FixtureRequest) -> str:
    """A real MongoDB's URI when MONGODB_URI is set; else the session's nx-27017."""
    if os.environ.get("MONGODB_URI"):
        return os.environ["MONGODB_URI"]
    cluster = request.getfixturevalue("cluster")
    assert cluster.endpoints is not None
    return str(cluster.endpoints.mongodb_uri)


@pytest.fixture
def db(uri: str) -> Iterator[Database]:
    client: pymongo.MongoClient = pymongo.MongoClient(uri, tz_aware=True)
    database = client[f"conformance_{uuid.uuid4().hex[:8]}"]
    try:
        yield database
    finally:
        client.drop_database(database.name)
        client.close()


def ids(c: Collection, query: dict, **kw: object) -> list:
    return [d["_id"] for d in c.find(query, {"_id": 1}, **kw)]  # type: ignore[arg-type]


def test_every_operation_is_pinned_by_a_test() -> None:
    assert set(OPERATIONS.values()) <= {n for n in globals() if n.startswith("test_")}


def test_inserts_and_unique_indexes(db: Database) -> None:
    c = db["versions"]
    c.create_index([("name", ASCENDING), ("version", ASCENDING)], unique=True)
    c.create_index([("digests", ASCENDING)], sparse=True)
    c.insert_one({"_id": "a@1", "name": "a", "version": "1"})
    with pytest.raises(DuplicateKeyError):
        c.insert_one({"_id": "a@1", "name": "x", "version": "9"})  # the same _id
    with pytest.raises(DuplicateKeyError):
        c.insert_one({"_id": "other", "name": "a", "version": "1"})  # the unique pair
    c.insert_many([{"_id": "b@1", "name": "b", "version": "1"}, {"_id": "c@1", "name": "c"}])
    with pytest.raises(BulkWriteError):  # unordered: the rest still go in
        c.insert_many(
            [{"_id": "d@1", "name": "d"}, {"_id": "a@1", "name": "a"}, {"_id": "e@1", "name": "e"}],
            ordered=False,
        )
    assert sorted(ids(c, {})) == ["a@1", "b@1", "c@1", "d@1", "e@1"]


def test_filters(db: Database) -> None:
    c = db["runs"]
    c.insert_many(
        [
            {"_id": "r1", "ms": 10, "state": "QUEUED", "ns": "a", "pairs": ["k=v", "x.y=1"]},
            {"_id": "r2", "ms": 20, "state": "COMPLETED", "ns": "a", "pairs": ["k=v"]},
            {"_id": "r3", "ms": 30, "state": "FAILED", "ns": "b"},
            {"_id": "r4", "ms": 40, "state": "RUNNING", "ns": "b", "artifacts": ["d1", "d2"]},
        ]
    )
    assert ids(c, {"ms": {"$lt": 20}}) == ["r1"]
    assert sorted(ids(c, {"ms": {"$gte": 20, "$lte": 30}})) == ["r2", "r3"]
    assert sorted(ids(c, {"ms": {"$gt": 0, "$lte": 30}})) == ["r1", "r2", "r3"]
    assert sorted(ids(c, {"state": {"$in": ["QUEUED", "RUNNING"]}})) == ["r1", "r4"]
    assert sorted(ids(c, {"ns": {"$nin": ["a"]}})) == ["r3", "r4"]
    assert sorted(ids(c, {"state": {"$ne": "FAILED"}})) == ["r1", "r2", "r4"]
    assert sorted(ids(c, {"artifacts": {"$exists": True}})) == ["r4"]
    assert ids(c, {"artifacts": "d2"}) == ["r4"]  # an array field equal to one element
    assert sorted(ids(c, {"pairs": "k=v"})) == ["r1", "r2"]
    assert ids(c, {"$and": [{"pairs": "k=v"}, {"pairs": "x.y=1"}]}) == ["r1"]
    assert sorted(ids(c, {"$or": [{"ms": {"$lt": 15}}, {"ns": "b", "ms": 40}]})) == ["r1", "r4"]
    assert (c.find_one({"_id": "r3"}) or {}).get("state") == "FAILED"
    assert c.find_one({"_id": "none"}) is None
    assert c.count_documents({"ns": "a"}) == 2


def test_keyset_paging(db: Database) -> None:
    """Newest first by (ms, id), a page at a time after the last key: how ListRuns pages."""
    c = db["runs"]
    c.insert_many(
        [{"_id": f"r{i}", "run_id": f"r{i}", "ms": i // 2, "plan": "x"} for i in range(7)]
    )
    order = [("ms", DESCENDING), ("run_id", DESCENDING)]
    seen, last = [], None
    while True:
        query = {}
        if last is not None:
            query = {"$or": [{"ms": {"$lt": last[0]}}, {"ms": last[0], "run_id": {"$lt": last[1]}}]}
        page = list(c.find(query, {"plan": 0}).sort(order).limit(3))
        assert all("plan" not in d for d in page)
        seen += [d["run_id"] for d in page]
        if len(page) < 3:
            break
        last = (page[-1]["ms"], page[-1]["run_id"])
    assert seen == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    assert [d["_id"] for d in c.find({}, {"_id": 1}).sort("ms", ASCENDING).limit(2)] == ["r0", "r1"]


def test_updates(db: Database) -> None:
    c = db["schedules"]
    c.insert_one({"_id": "s", "next_ms": 100, "runs": 0, "paused": False, "note": "x"})
    # A compare-and-set on a second field: only the first of two such updates matches.
    moved = c.update_one(
        {"_id": "s", "next_ms": 100}, {"$set": {"next_ms": 200}, "$inc": {"runs": 1}}
    )
    again = c.update_one(
        {"_id": "s", "next_ms": 100}, {"$set": {"next_ms": 300}, "$inc": {"runs": 1}}
    )
    assert (moved.matched_count, again.matched_count) == (1, 0)
    c.update_one({"_id": "s"}, {"$unset": {"note": ""}})
    assert c.find_one({"_id": "s"}) == {"_id": "s", "next_ms": 200, "runs": 1, "paused": False}
    c.update_one({"_id": "new"}, {"$set": {"weight": 2.5}}, upsert=True)
    assert c.find_one({"_id": "new"}) == {"_id": "new", "weight": 2.5}
    c.update_many({"paused": {"$exists": False}}, {"$set": {"paused": True}})
    # A bool an update sets comes back equal to it (nx-27017: as 1, so readers take bool()
    # of it, as RegistryRecord and ScheduleRecord do), and a query by it finds it.
    assert (c.find_one({"_id": "new"}) or {})["paused"] == 1
    assert ids(c, {"paused": True}) == ["new"]
    # The replacement names its _id (nx-27017 upserts one without it under a new ObjectId).
    c.replace_one({"_id": "k"}, {"_id": "k", "role": "viewer"}, upsert=True)
    c.replace_one({"_id": "k"}, {"_id": "k", "role": "admin"}, upsert=True)
    assert c.find_one({"_id": "k"}) == {"_id": "k", "role": "admin"}
    after = c.find_one_and_update(
        {"_id": "k", "role": "admin"},
        {"$set": {"deprecated": True}},
        return_document=ReturnDocument.AFTER,
    )
    assert after == {"_id": "k", "role": "admin", "deprecated": True}
    assert c.find_one_and_update({"_id": "none"}, {"$set": {"x": 1}}) is None
    result = c.bulk_write(
        [
            UpdateOne({"_id": "s"}, {"$set": {"state": "COMPLETED"}}),
            UpdateOne({"_id": "gone"}, {"$set": {"x": 1}}),
        ],
        ordered=False,
    )
    assert result.matched_count == 1
    assert (c.find_one({"_id": "s"}) or {})["state"] == "COMPLETED"


def test_deletes(db: Database) -> None:
    c = db["runs"]
    c.insert_many([{"_id": i, "ms": i, "ns": "a" if i % 2 else "b"} for i in range(6)])
    assert c.delete_one({"_id": 0}).deleted_count == 1
    assert c.delete_one({"_id": 0}).deleted_count == 0
    assert c.delete_many({"ns": "a", "ms": {"$lt": 4}}).deleted_count == 2  # 1 and 3
    assert sorted(ids(c, {})) == [2, 4, 5]


def test_datetimes_round_trip(db: Database) -> None:
    c = db["run_requests"]
    when = datetime(2026, 12, 4, 21, 58, 19, 123000, tzinfo=UTC)
    c.insert_one({"_id": "req", "created_at": when})
    assert (c.find_one({"_id": "req"}) or {})["created_at"] == when
    assert ids(c, {"created_at": {"$lt": datetime(2027, 1, 1, tzinfo=UTC)}}) == ["req"]
