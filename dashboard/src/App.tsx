import { NavLink, Route, Routes } from "react-router-dom";
import { useAuth } from "./api/auth";
import { ConnectionIndicator } from "./components/ConnectionIndicator";
import { useLiveStats } from "./hooks/stats";
import { useTheme } from "./hooks/useTheme";
import { DeadLetters } from "./views/DeadLetters";
import { Enqueue } from "./views/Enqueue";
import { JobDetail } from "./views/JobDetail";
import { Jobs } from "./views/Jobs";
import { NotFound } from "./views/NotFound";
import { Overview } from "./views/Overview";
import { Queues } from "./views/Queues";
import { Schedules } from "./views/Schedules";
import { SignIn, SignOutButton } from "./views/SignIn";
import { Workers } from "./views/Workers";

function DeadCount() {
  const { stats } = useLiveStats();
  if (!stats || stats.dead === 0) return null;
  return (
    <span className="nav-count" data-testid="nav-dead-count" aria-label={`${stats.dead} dead jobs`}>
      {stats.dead > 999 ? "999+" : stats.dead}
    </span>
  );
}

export function App() {
  const [theme, toggleTheme] = useTheme();
  const { required } = useAuth();
  return (
    <div className="app">
      <header className="topbar">
        <NavLink to="/" className="brand" end>
          <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
            <path d="M4 20V8l8-5 8 5v12h-5v-7H9v7z" fill="currentColor" />
          </svg>
          Forge
        </NavLink>
        <nav className="nav" aria-label="Main">
          <NavLink to="/" end>
            Overview
          </NavLink>
          <NavLink to="/jobs">Jobs</NavLink>
          <NavLink to="/dlq">
            Dead letters <DeadCount />
          </NavLink>
          <NavLink to="/workers">Workers</NavLink>
          <NavLink to="/queues">Queues</NavLink>
          <NavLink to="/schedules">Schedules</NavLink>
          <NavLink to="/enqueue">Enqueue</NavLink>
        </nav>
        <div className="topbar-right">
          <ConnectionIndicator />
          <button
            type="button"
            className="btn btn-icon"
            onClick={toggleTheme}
            aria-label={theme === "dark" ? "Switch to the light theme" : "Switch to the dark theme"}
            title={theme === "dark" ? "Light theme" : "Dark theme"}
            data-testid="theme-toggle"
          >
            {theme === "dark" ? "☀" : "☾"}
          </button>
          <SignOutButton />
        </div>
      </header>
      <main className="content">
        {required ? (
          <SignIn />
        ) : (
          <Routes>
            <Route path="/" element={<Overview />} />
            <Route path="/jobs" element={<Jobs />} />
            <Route path="/jobs/:id" element={<JobDetail />} />
            <Route path="/dlq" element={<DeadLetters />} />
            <Route path="/workers" element={<Workers />} />
            <Route path="/queues" element={<Queues />} />
            <Route path="/schedules" element={<Schedules />} />
            <Route path="/enqueue" element={<Enqueue />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        )}
      </main>
    </div>
  );
}
