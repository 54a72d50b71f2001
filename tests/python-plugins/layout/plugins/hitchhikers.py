"""The plugin of Slack Machine's documentation, moved with its imports
changed: `plugins.hitchhikers.UltimateQuestionPlugin`."""

from warden import MachineBasePlugin, respond_to


class UltimateQuestionPlugin(MachineBasePlugin):
    """Answers the ultimate question"""

    @respond_to(r"what is the answer to the ultimate question about life, the universe and everything")
    async def answer(self, msg):
        """ultimate question: the answer to it"""
        await msg.say("42")
