import { useQuery } from "@tanstack/react-query";
import { useAuth } from "../api/auth";
import { api } from "../api/client";

/**
 * Whether the token's role may change things (cancel, retry, purge, pause), asked once per
 * token: a read-only role (producer) gets views without those buttons. Until the answer is in,
 * or when the question itself fails, the buttons show and a refusal is shown where it happens.
 */
export function useCanOperate(): boolean {
  const { token, required } = useAuth();
  const q = useQuery({
    queryKey: ["can-operate", token],
    queryFn: ({ signal }) => api.canOperate(signal),
    enabled: !required,
    staleTime: Infinity,
    retry: false,
  });
  return q.data !== false;
}
