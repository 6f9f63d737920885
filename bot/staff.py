"""Who is staff, and in which roles: roles are memberships of the staff rooms."""

from __future__ import annotations

from bot.conversation import StaffRole
from bot.ids import RoomId, UserId
from bot.matrix import BotMatrix
from bot.settings import BotSettings


class Staff:
    def __init__(self, settings: BotSettings, matrix: BotMatrix) -> None:
        self.settings = settings
        self.matrix = matrix
        self.rooms = {
            StaffRole.ADVOCATE: settings.dispatch_room,
            StaffRole.SUPERVISOR: settings.supervisors_room,
            StaffRole.INTERPRETER: settings.interpreters_room,
            StaffRole.ADMIN: settings.admin_room,
        }

    @property
    def admin_room(self) -> RoomId | None:
        return RoomId(self.settings.admin_room) if self.settings.admin_room else None

    def members(self) -> set[str]:
        """Everyone in a staff room but the bot."""
        rooms = [self.settings.dispatch_room, self.settings.supervisors_room, self.settings.interpreters_room,
                 self.settings.admin_room]
        return {user for room in rooms if room for user in self.matrix.room_members(room)} - {self.matrix.user_id}

    def roles_of(self, user: UserId) -> frozenset[StaffRole]:
        """Roles are room memberships."""
        return frozenset(role for role, room in self.rooms.items() if room and user in self.matrix.room_members(room))

    def is_admin(self, user: str) -> bool:
        return StaffRole.ADMIN in self.roles_of(UserId(user))
