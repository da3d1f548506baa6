"""Who is acting: the signed-in member of staff, detached from any database session."""

from __future__ import annotations

from dataclasses import dataclass

from robot.models import Role, Staff


@dataclass(frozen=True)
class CurrentStaff:
    id: int
    username: str
    display_name: str
    role: str
    area: str | None
    language: str
    phone: str | None

    @classmethod
    def of(cls, staff: Staff, language: str | None = None) -> CurrentStaff:
        return cls(
            id=staff.id,
            username=staff.username,
            display_name=staff.display_name,
            role=staff.role,
            area=staff.area,
            language=language or staff.language,
            phone=staff.phone,
        )

    @property
    def actor(self) -> str:
        """How staff actions are signed on the timeline."""
        return f"staff:{self.username}"

    @property
    def supervises(self) -> bool:
        """Supervisors and admins see every area, reassign cases and read the reports."""
        return self.role in (Role.SUPERVISOR.value, Role.ADMIN.value)

    @property
    def sees_all_areas(self) -> bool:
        return self.supervises or self.area is None
