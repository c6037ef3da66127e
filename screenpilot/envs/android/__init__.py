"""Android phones and emulators over ADB (adbutils), plus a fake ADB server for tests and demos."""

from screenpilot.envs.android.claim import DeviceBusyError
from screenpilot.envs.android.device import AndroidDevice, DeviceListing, RetryPolicy, list_devices
from screenpilot.envs.android.env import AndroidEnv

__all__ = ["AndroidDevice", "AndroidEnv", "DeviceBusyError", "DeviceListing", "RetryPolicy", "list_devices"]
