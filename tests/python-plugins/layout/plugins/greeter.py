"""A second plugin in the package, so that building the package needs
--class; it cannot run without its `greeting` setting."""

from warden import Plugin, required_settings, respond_to


@required_settings(["greeting"])
class GreeterPlugin(Plugin):
    """Greets"""

    @respond_to(r"^hello$")
    async def hello(self, msg):
        """hello: greets you"""
        await msg.reply(self.settings["greeting"])
