from tasks.base.task_base import SimpleTask


class Task(SimpleTask):
    def process(self, input_data):
        return {}
