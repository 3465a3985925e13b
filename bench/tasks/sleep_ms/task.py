import time

from tasks.base.task_base import SimpleTask


class Task(SimpleTask):
    def process(self, input_data):
        time.sleep(float(input_data.get("ms", 0)) / 1000)
        return {"slept_ms": input_data.get("ms", 0)}
