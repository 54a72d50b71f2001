"""Stores, retrieves and deletes text by key, in the plugin's private
storage: Slack Machine's storage example, as a Warden plugin.

    @bot store hello world under greeting   'hello world' stored under greeting!
    @bot retrieve greeting                  'hello world' retrieved from <greeting>!
    @bot does greeting exist?               <greeting> exists.
    @bot delete greeting                    data in <greeting> deleted!
    @bot size                               storage size: 32.0 KiB

Build it with ./build.sh; its identity is python_storage.StoragePlugin.
"""

from warden import Plugin, respond_to


class StoragePlugin(Plugin):
    """Stores, retrieves and deletes text by key"""

    @respond_to(r"store (?P<text>.*) under (?P<key>\w+)")
    async def store(self, msg, text, key):
        await self.storage.set(key, text)
        await msg.say(f"'{text}' stored under {key}!")

    @respond_to(r"retrieve (?P<key>\w+)")
    async def retrieve(self, msg, key):
        data = await self.storage.get(key)
        if data:
            await msg.say(f"'{data}' retrieved from <{key}>!")
        else:
            await msg.say("Key not found!")

    @respond_to(r"delete (?P<key>\w+)")
    async def delete(self, msg, key):
        await self.storage.delete(key)
        await msg.say(f"data in <{key}> deleted!")

    @respond_to(r"does (?P<key>\w+) exist?")
    async def exists(self, msg, key):
        if await self.storage.has(key):
            await msg.say(f"<{key}> exists.")
        else:
            await msg.say(f"<{key}> does not exist!")

    @respond_to(r"size")
    async def size(self, msg):
        human_size = await self.storage.get_storage_size_human()
        await msg.say(f"storage size: {human_size}")
