"""A second plugin in the package, so that building it needs --class."""

from warden import Plugin, respond_to


class GreeterPlugin(Plugin):
    """Greets"""

    @respond_to(r"^hello$")
    async def hello(self, msg):
        await msg.reply("hello")
