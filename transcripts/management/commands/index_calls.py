"""Write the search document of every ended call that has none (calls from before the
search existed, or ended while no worker ran). `--all` rewrites every one."""

from django.core.management.base import BaseCommand

from calls.models import Call
from transcripts.search import index_call


class Command(BaseCommand):
    help = "Make ended calls findable by what was said in them (their search documents)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="rewrite existing documents too")

    def handle(self, *args, **options):
        calls = Call.objects.filter(ended_at__isnull=False).select_related("agent")
        if not options["all"]:
            calls = calls.filter(search__isnull=True)
        done = 0
        for call in calls.iterator(chunk_size=500):
            index_call(call)
            done += 1
            if done % 5000 == 0:
                self.stdout.write(f"{done} calls indexed…")
        self.stdout.write(f"{done} calls indexed.")
