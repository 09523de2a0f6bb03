"""Issue 26 item 5: each Celery queue is bound to its own exchange by its own name, so a task
routed to the gpu queue can never reach the cpu queue's workers, nor the other way round."""

from core.config import Settings
from worker.celery_app import CPU_TASKS, GPU_TASKS, make_celery


def celery():
    return make_celery(Settings(broker_url="redis://127.0.0.1:6379/15"))


def test_each_queue_is_bound_to_an_exchange_of_its_own_by_its_own_name() -> None:
    queues = celery().amqp.queues

    bindings = {name: (queue.exchange.name, queue.routing_key) for name, queue in queues.items()}

    assert bindings == {"gpu": ("gpu", "gpu"), "cpu": ("cpu", "cpu")}


def test_tasks_are_sent_through_their_queues_exchange() -> None:
    router = celery().amqp.router

    for names, queue in ((GPU_TASKS, "gpu"), (CPU_TASKS, "cpu")):
        for name in names:
            route = router.route({}, name, args=["row"])
            assert route["queue"].name == queue
            assert route["queue"].exchange.name == queue
            assert route["queue"].routing_key == queue
